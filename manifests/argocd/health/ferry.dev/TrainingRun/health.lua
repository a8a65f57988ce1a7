-- Argo CD health of a ferry.dev TrainingRun (Lua 5.1, no string/math libraries needed).
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
local succeeded = condition("Succeeded")
local phase = obj.status.phase
-- A finished run is final: later spec edits do not re-run it.
if phase == "Succeeded" then
  return {status = "Healthy", message = say(succeeded, "Training succeeded")}
end
if phase == "Failed" then
  return {status = "Degraded", message = say(succeeded, "Training failed")}
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation then
  return {status = "Progressing", message = "Spec change not yet observed"}
end
local accepted = condition("Accepted")
if accepted ~= nil and accepted.status == "False" then
  return {status = "Degraded", message = say(accepted, "Invalid spec")}
end
local scheduled = condition("Scheduled")
if scheduled ~= nil and scheduled.status == "False" then
  return {status = "Progressing", message = say(scheduled, "Waiting for capacity")}
end
return {status = "Progressing", message = say(succeeded, "Training is " .. (phase or "pending"))}
