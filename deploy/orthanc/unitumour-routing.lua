-- Orthanc routing for UniTumour DICOM (loaded through "LuaScripts" in orthanc.json).
--
-- When a series has been quiet for StableAge seconds and holds VL Whole Slide Microscopy
-- images, send the whole series to the UniTumour listener (modality "unitumour"). The
-- Segmentation that comes back (Modality SEG, from AE UNITUMOUR) is simply stored, that is
-- archived, by Orthanc; it is never sent back, so nothing loops.

local WSI_SOP_CLASS = '1.2.840.10008.5.1.4.1.1.77.1.6'
local TARGET = 'unitumour'

local function first_instance(seriesId)
  local series = ParseJson(RestApiGet('/series/' .. seriesId))
  if series == nil or series['Instances'] == nil or #series['Instances'] == 0 then
    return nil
  end
  return series['Instances'][1]
end

local function metadata(instanceId, name)
  -- RestApiGet raises for a missing metadata item; pcall turns that into nil
  local ok, value = pcall(RestApiGet, '/instances/' .. instanceId .. '/metadata/' .. name)
  if ok then
    return value
  end
  return nil
end

function OnStableSeries(seriesId, tags, metadataOfSeries)
  if tags['Modality'] ~= 'SM' then
    return
  end
  local instanceId = first_instance(seriesId)
  if instanceId == nil then
    return
  end
  if metadata(instanceId, 'SopClassUid') ~= WSI_SOP_CLASS then
    return
  end
  if metadata(instanceId, 'RemoteAET') == 'UNITUMOUR' then
    return
  end
  print('UniTumour: sending whole-slide series ' .. seriesId .. ' to ' .. TARGET)
  -- Asynchronous: runs as an Orthanc job, visible and resumable in /jobs. The listener answers
  -- success only once each instance is durable, and takes a resent instance as a duplicate.
  -- DumpJson(..., true) keeps strings as strings: no number-like field may go through it
  RestApiPost('/modalities/' .. TARGET .. '/store',
              DumpJson({ Resources = { seriesId }, Asynchronous = true }, true))
end
