//! Nothing to see here: this package owns the end-to-end tests in `tests/`,
//! which build and run the real `a365` and `a365-agent` binaries.
