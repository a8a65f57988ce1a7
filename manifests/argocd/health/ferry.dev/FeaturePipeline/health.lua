-- Argo CD health of a ferry.dev FeaturePipeline (Lua 5.1, no string/math libraries needed).
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
if obj.spec ~= nil and obj.spec.suspend == true then
  return {status = "Suspended", message = "Schedule suspended"}
end
local phase = obj.status.phase
if phase == "Failed" then
  return {status = "Degraded", message = say(condition("Validated"), say(condition("Ready"), "Run failed"))}
end
if phase == "Stale" then
  return {status = "Degraded", message = say(condition("Fresh"), "Features are stale")}
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  return {status = "Healthy", message = say(ready, "Features are ready")}
end
return {status = "Progressing", message = say(ready, "Computing features")}
