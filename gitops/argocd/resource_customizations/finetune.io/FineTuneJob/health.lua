-- Argo CD health of a finetune.io FineTuneJob (gopher-lua, Lua 5.1). Reads status.phase and the kstatus
-- conditions the operator writes (operator/finetune_operator/status.py):
--   no status, or status.observedGeneration < metadata.generation -> Progressing (the operator has not acted yet)
--   Succeeded -> Healthy, unless its Complete condition says ResultMissing (the pod wrote no result) -> Degraded
--   Failed -> Degraded; Suspended -> Suspended
--   Pending with Stalled=True (unschedulable too long, image pull, missing Secret) -> Degraded
--   Pending, Queued, Running -> Progressing (a training job is healthy only once it has finished)
local hs = {}

local function condition(kind)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function said(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if obj.status.message ~= nil and obj.status.message ~= "" then
    return obj.status.message
  end
  return fallback
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the job"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. generation
  return hs
end

local phase = obj.status.phase
if phase == "Succeeded" then
  local complete = condition("Complete")
  if complete ~= nil and complete.reason == "ResultMissing" then
    hs.status = "Degraded"
  else
    hs.status = "Healthy"
  end
  hs.message = said(complete, "Training finished")
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = said(condition("Failed"), "Training failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = said(condition("Suspended"), "runPolicy.suspend is true")
else
  local stalled = condition("Stalled")
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = said(stalled, "Stalled")
  else
    hs.status = "Progressing"
    hs.message = said(condition("Reconciling"), phase)
    local progress = obj.status.progress
    if phase == "Running" and progress ~= nil and progress.percent ~= nil then
      hs.message = hs.message .. " (" .. progress.percent .. "%)"
    end
  end
end
return hs
