-- Neovim: ask a365-agent for a token over its JSON protocol (no plugins).
--   local token = require("a365").token("work")
-- See docs/protocol.md.
local M = {}

local function socket_path()
  local sock = vim.env.A365_AGENT_SOCK
  if sock and sock ~= "" then return sock end
  if vim.env.XDG_RUNTIME_DIR then return vim.env.XDG_RUNTIME_DIR .. "/a365/agent.sock" end
  return (vim.env.TMPDIR or "/tmp") .. "/a365-" .. vim.loop.getuid() .. "/agent.sock"
end

-- Returns the token, or nil and the agent's message.
function M.token(profile, min_valid_ms)
  local pipe = vim.loop.new_pipe(false)
  local reply, done = "", false
  pipe:connect(socket_path(), function(err)
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
