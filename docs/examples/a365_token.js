#!/usr/bin/env node
// Get a token from a365-agent over its JSON protocol (Node's standard
// library only), or watch a profile's events, as an editor plugin would.
//
// Usage: a365_token.js [PROFILE] [--min-valid-ms N] [--watch]
// See docs/protocol.md.
"use strict";
const net = require("net");
const os = require("os");
const path = require("path");
const readline = require("readline");

// a365's exit codes, by error kind (see docs/protocol.md).
const EXIT_CODES = {
  bad_request: 1, internal: 1, unknown_profile: 4, needs_reauth: 5,
  unavailable: 6, missing_scope: 7, invalid_profile: 8, permission_denied: 9,
};

function socketPath() {
  if (process.env.A365_AGENT_SOCK) return process.env.A365_AGENT_SOCK;
  if (process.env.XDG_RUNTIME_DIR) return path.join(process.env.XDG_RUNTIME_DIR, "a365", "agent.sock");
  return path.join(os.tmpdir(), `a365-${process.getuid()}`, "agent.sock");
}

// Sends one request; calls onResponse for every response line that follows
// (one for most requests, a stream for "watch").
function ask(request, onResponse) {
  const sock = net.createConnection(socketPath());
  sock.on("error", (e) => {
    console.error(`a365_token.js: no agent at ${socketPath()}: ${e.message}`);
    process.exit(3);
  });
  sock.write(JSON.stringify({ version: 1, request }) + "\n");
  readline.createInterface({ input: sock }).on("line", (line) => {
    onResponse(JSON.parse(line).response, sock);
  });
}

function main(argv) {
  let profile = null, minValidMs = 0, watch = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--min-valid-ms") minValidMs = Number(argv[++i]);
    else if (argv[i] === "--watch") watch = true;
    else profile = argv[i];
  }
  if (watch) {
    // "done" first, then one {"event": {...}} per change; no token in it.
    ask({ watch: { profile } }, (response) => {
      if (response.error) {
        console.error(`a365_token.js: ${response.error.message}`);
        process.exit(EXIT_CODES[response.error.kind] || 1);
      }
      if (response.event) console.log(`${response.event.profile} ${response.event.kind}`);
      else console.error(`a365_token.js: ${response.done.message}`);
    });
    return;
  }
  ask({ token: { profile, min_valid_ms: minValidMs, scopes: [] } }, (response, sock) => {
    sock.end();
    if (response.error) {
      console.error(`a365_token.js: ${response.error.message}`);
      process.exit(EXIT_CODES[response.error.kind] || 1);
    }
    console.log(response.token.token);
  });
}

main(process.argv.slice(2));
