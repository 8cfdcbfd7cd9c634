"""Attack plugins (DESIGN.md §4): the base class, discovery by name, and the built-in attacks.

Third-party packages add attacks through the entry-point group ``diffsem.attacks``
(``my-attack = my_pkg.attacks:MyAttack``); :func:`make_attack` finds built-ins and plugins by name.
"""

from diffsem.attacks import builtin as _builtin  # noqa: F401  (registers the built-ins)
from diffsem.attacks.base import (
    ENTRY_POINT_GROUP,
    Attack,
    AttackError,
    attack_checkpoint_path,
    judge_labels,
    known_attacks,
    load_attack,
    make_attack,
    register,
    save_attack,
)

__all__ = ["ENTRY_POINT_GROUP", "Attack", "AttackError", "attack_checkpoint_path", "judge_labels", "known_attacks", "load_attack",
           "make_attack", "register", "save_attack"]
