"""Channel emulator service: per-listener impaired links over the core channel model."""
