//! Contract test suites, run against every adapter.
