"""Attack plugins (docs/design.md §4): the base class, discovery by name through the entry-point group
``diffsem.attacks`` (built-ins and plugins alike), and :func:`load_attack`, which builds one ready to run."""

from diffsem.attacks.base import (
    ENTRY_POINT_GROUP,
    THREAT_MODELS,
    Attack,
    AttackError,
    AttackResult,
    attack_checkpoint_path,
    attack_class,
    default_zoo,
    known_attacks,
    load_attack,
    load_attack_weights,
    save_attack,
)

__all__ = ["ENTRY_POINT_GROUP", "THREAT_MODELS", "Attack", "AttackError", "AttackResult", "attack_checkpoint_path",
           "attack_class", "default_zoo", "known_attacks", "load_attack", "load_attack_weights", "save_attack"]
