-- Neovim: ask a365-agent for a token over its JSON protocol (no plugins).
--   local token = require("a365").token("work")
-- See docs/protocol.md.
local M = {}

local uv = vim.loop

-- A directory of our own that nobody else can write (not followed if a link).
local function ours(dir)
  local st = uv.fs_lstat(dir)
  return st ~= nil and st.type == "directory" and st.uid == uv.getuid()
    and bit.band(st.mode, tonumber("022", 8)) == 0
end

-- Where a365 looks (docs/protocol.md): never a shared place like /tmp.
local function socket_path()
  local sock = vim.env.A365_AGENT_SOCK
  if sock and sock ~= "" then return sock end
  if vim.env.XDG_RUNTIME_DIR then return vim.env.XDG_RUNTIME_DIR .. "/a365/agent.sock" end
  local session = "/run/user/" .. uv.getuid()
  if vim.fn.has("linux") == 1 and ours(session) then return session .. "/a365/agent.sock" end
  local home = uv.os_homedir()
  if vim.fn.has("mac") == 1 then return home .. "/Library/Application Support/a365/agent.sock" end
  return (vim.env.XDG_STATE_HOME or (home .. "/.local/state")) .. "/a365/agent.sock"
end

-- Lua cannot ask a Unix socket for its peer's uid: the socket and its
-- directory must be ours, or another user may have created them first and
-- would receive our request (and hand us a token of its choice).
local function check_owner(path)
  local st = uv.fs_lstat(path)
  if st == nil then return true end
  local dir = vim.fn.fnamemodify(path, ":h")
  return ours(dir) and st.uid == uv.getuid()
end

-- Returns the token, or nil and the agent's message.
function M.token(profile, min_valid_ms)
  local path = socket_path()
  if not check_owner(path) then
    return nil, path .. " or its directory is not yours alone: nothing was sent"
  end
  local pipe = uv.new_pipe(false)
  local reply, done = "", false
  pipe:connect(path, function(err)
    if err then reply, done = vim.json.encode({ error = { message = err } }), true; return end
    local request = { version = 1, request = { token = { profile = profile, min_valid_ms = min_valid_ms or 0, scopes = {} } } }
    pipe:write(vim.json.encode(request) .. "\n")
    pipe:read_start(function(_, chunk)
      if chunk then reply = reply .. chunk end
      if not chunk or reply:find("\n") then pipe:close(); done = true end
    end)
  end)
  vim.wait(5000, function() return done end, 10)
  local ok, message = pcall(vim.json.decode, reply)
  if not ok or not message then return nil, "no answer from a365-agent" end
  local response = message.response or message
  if response.error then return nil, response.error.message end
  return response.token.token
end

return M
