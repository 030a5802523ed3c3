"""Valve permissions: rule files compiled at load time and checked per message.

``Permissions.load(path)`` compiles a file; ``Permissions.check(section, rule_type, name, user,
...)`` decides one action. Rules are interpreted by :mod:`.expression` over JSON values: no
``eval``, no host attributes.
"""

from .expression import RuleSyntaxError, compile_expression
from .jsvalues import UNDEFINED, RuleError
from .valve import RULE_TYPES, Permissions, Rule, User, Verdict, compile_pattern

__all__ = [
    "RULE_TYPES",
    "UNDEFINED",
    "Permissions",
    "Rule",
    "RuleError",
    "RuleSyntaxError",
    "User",
    "Verdict",
    "compile_expression",
    "compile_pattern",
]
