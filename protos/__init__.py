"""Protocol definitions (package ``diffsem.v1``) and their generated Python code."""
