-- Argo CD health of a ferry.dev InferenceService (Lua 5.1, no string/math libraries needed).
local function condition(name)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == name then return c end
  end
  return nil
end
local function say(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then return c.message end
  if c ~= nil and c.reason ~= nil then return c.reason end
  return default
end

if obj.status == nil or obj.status.observedGeneration == nil then
  return {status = "Progressing", message = "Waiting for the operator"}
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  return {status = "Progressing", message = "Spec change not yet observed"}
end
local accepted = condition("Accepted")
if accepted ~= nil and accepted.status == "False" then
  return {status = "Degraded", message = say(accepted, "Invalid spec")}
end
local ready = condition("Ready")
local phase = obj.status.phase
local message = obj.status.message
if message == nil or message == "" then message = say(condition("Progressing"), say(ready, phase)) end
if phase == "Degraded" then
  return {status = "Degraded", message = message}
end
if phase == "RolledBack" then
  return {status = "Degraded", message = "Rolled back: " .. message}
end
if phase == "Paused" then
  return {status = "Suspended", message = message}
end
if phase == "Healthy" and ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = say(ready, "Serving")}
end
return {status = "Progressing", message = message or "Rolling out"}
