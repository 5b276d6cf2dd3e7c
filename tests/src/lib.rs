//! Workspace-level tests live in `tests/` (scenarios, properties, cluster tests).
