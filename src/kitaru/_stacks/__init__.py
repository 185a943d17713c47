"""Stacks: where an execution runs. The registry of named, persisted stacks."""

from kitaru._stacks.registry import (
    LOCAL_STACK_ID,
    LOCAL_STACK_NAME,
    STACK_KINDS,
    StackInfo,
    create_stack,
    current_stack,
    delete_stack,
    find_stack,
    get_stack,
    get_stack_record,
    list_stacks,
    persisted_active_stack,
    use_stack,
)

__all__ = [
    "LOCAL_STACK_ID",
    "LOCAL_STACK_NAME",
    "STACK_KINDS",
    "StackInfo",
    "create_stack",
    "current_stack",
    "delete_stack",
    "find_stack",
    "get_stack",
    "get_stack_record",
    "list_stacks",
    "persisted_active_stack",
    "use_stack",
]
