//! End-to-end tests: the real `a365-agent` and `a365` binaries, temporary
//! XDG directories and socket, and a local OAuth token server on loopback.

// In tests a panic is a failed test with its message: unwrap freely.
#![allow(clippy::unwrap_used)]

mod harness;

mod access;
mod agent_lifecycle;
mod altium;
mod autostart;
mod bad_input;
mod budget;
mod cli;
mod clock;
mod crash_trials;
mod designer;
mod doctor;
mod dot;
mod events;
mod exec_env;
mod exit_codes;
mod failures;
mod fault_suite;
mod first_minutes;
mod fleet;
mod forward;
mod interactive;
mod json_mode;
mod keyring;
mod oidc;
mod params;
mod providers;
mod proxy;
mod python_client;
mod readme;
mod refresh;
mod revoke;
mod routes;
mod secrets;
mod sinks;
mod systemd;
mod tls;
mod token;
mod upgrade;
