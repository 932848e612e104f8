#!/usr/bin/env node
// Get a token from a365-agent over its JSON protocol (Node's standard
// library only), or watch a profile's events, as an editor plugin would.
//
// Usage: a365_token.js [PROFILE] [--min-valid-ms N] [--watch]
// See docs/protocol.md.
"use strict";
const fs = require("fs");
const net = require("net");
const os = require("os");
const path = require("path");
const readline = require("readline");

// a365's exit codes, by error kind (see docs/protocol.md).
const EXIT_CODES = {
  bad_request: 1, internal: 1, unknown_profile: 4, needs_reauth: 5,
  unavailable: 6, missing_scope: 7, invalid_profile: 8, permission_denied: 9,
};

// A directory of our own that nobody else can write (not followed if a link).
function ours(dir) {
  try {
    const st = fs.lstatSync(dir);
    return st.isDirectory() && st.uid === process.geteuid() && (st.mode & 0o022) === 0;
  } catch (e) {
    return false;
  }
}

// Where a365 looks (docs/protocol.md): never a shared place like /tmp.
function socketPath() {
  if (process.env.A365_AGENT_SOCK) return process.env.A365_AGENT_SOCK;
  if (process.env.XDG_RUNTIME_DIR) return path.join(process.env.XDG_RUNTIME_DIR, "a365", "agent.sock");
  const session = `/run/user/${process.geteuid()}`;
  if (process.platform === "linux" && ours(session)) return path.join(session, "a365", "agent.sock");
  const state = process.platform === "darwin"
    ? path.join(os.homedir(), "Library", "Application Support")
    : process.env.XDG_STATE_HOME || path.join(os.homedir(), ".local", "state");
  return path.join(state, "a365", "agent.sock");
}

// Node cannot ask a Unix socket for its peer's uid, so check what the
// file system says before connecting: the socket and its directory must be
// ours, or another user may have created them first and would receive our
// requests (and hand us tokens of its choice).
function checkOwner(sockPath) {
  const me = process.geteuid();
  let owner = null;
  try {
    owner = fs.lstatSync(sockPath).uid;
  } catch (e) {
    return; // nothing there: connecting says so
  }
  if (!ours(path.dirname(sockPath)) || owner !== me) {
    console.error(`a365_token.js: ${sockPath} or its directory is not yours alone (uid ${owner}, you are ${me}); nothing was sent`);
    process.exit(9);
  }
}

// Sends one request; calls onResponse for every response line that follows
// (one for most requests, a stream for "watch").
function ask(request, onResponse) {
  checkOwner(socketPath());
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
