"""The engine: ``RealtimeExecutor``'s parts, one module per job (README "The cycle" lists
them). Nothing is imported here, so a part loads only what it needs."""
