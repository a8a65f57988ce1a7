-- Argo CD health of a ferry.dev ModelVersion (Lua 5.1, no string/math libraries needed).
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
local phase = obj.status.phase
if phase == "Rejected" then
  return {status = "Degraded", message = say(condition("GatesPassed"), "Gates failed")}
end
local registry = condition("RegistryReachable")
if registry ~= nil and registry.status == "False" then
  return {status = "Degraded", message = say(registry, "Model registry unreachable")}
end
if phase == "AwaitingApproval" then
  return {status = "Suspended", message = say(condition("Approved"), "Waiting for approval")}
end
if phase == "Approved" or phase == "Serving" or phase == "Retired" then
  return {status = "Healthy", message = say(condition("Ready"), "Model version " .. phase)}
end
return {status = "Progressing", message = "Model version " .. (phase or "pending")}
