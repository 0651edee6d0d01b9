// The slide and the very SEG that went to the PACS, over our read-only DICOMweb endpoint.
// State for tests and people: window.unitumourViewer and the #viewer-status text.
(function () {
  "use strict";
  var el = document.getElementById("viewport");
  var status = document.getElementById("viewer-status");
  var state = { ready: false, segmentsShown: false, error: null, segments: [] };
  window.unitumourViewer = state;

  function say(text) {
    status.textContent = text;
  }

  function fail(error) {
    state.error = String(error && error.message ? error.message : error);
    say("Error: " + state.error);
    console.error(error);
  }

  async function start() {
    var DMV = window.dicomMicroscopyViewer;
    var DWC = window.DICOMwebClient;
    if (!DMV || !DWC) {
      throw new Error("viewer scripts did not load");
    }
    var client = new DWC.api.DICOMwebClient({
      url: new URL(el.dataset.dicomweb, window.location.href).href.replace(/\/$/, ""),
    });
    var study = el.dataset.study;
    say("Loading slide metadata…");
    var slideMetadata = await client.retrieveSeriesMetadata({
      studyInstanceUID: study,
      seriesInstanceUID: el.dataset.series,
    });
    var volumeImages = [];
    slideMetadata.forEach(function (m) {
      var image = new DMV.metadata.VLWholeSlideMicroscopyImage({ metadata: m });
      var flavour = image.ImageType[2];
      if (flavour === "VOLUME" || flavour === "THUMBNAIL") {
        volumeImages.push(image);
      }
    });
    if (volumeImages.length === 0) {
      throw new Error("the series has no VOLUME images");
    }
    var viewer = new DMV.viewer.VolumeImageViewer({ client: client, metadata: volumeImages });
    viewer.render({ container: el });
    state.viewer = viewer;
    if (el.dataset.segSeries) {
      say("Loading segmentation…");
      var segMetadata = await client.retrieveSeriesMetadata({
        studyInstanceUID: el.dataset.segStudy,
        seriesInstanceUID: el.dataset.segSeries,
      });
      var segs = segMetadata.map(function (m) {
        return new DMV.metadata.Segmentation({ metadata: m });
      });
      viewer.addSegments(segs);
      state.segments = viewer.getAllSegments().map(function (s) {
        return { uid: s.uid, label: s.label, number: s.number };
      });
      var toggle = document.getElementById("show-segment");
      var opacity = document.getElementById("segment-opacity");
      var show = function () {
        state.segments.forEach(function (s) {
          if (toggle.checked) {
            viewer.showSegment(s.uid, { opacity: Number(opacity.value) / 100 });
          } else {
            viewer.hideSegment(s.uid);
          }
        });
        state.segmentsShown = toggle.checked;
      };
      toggle.disabled = false;
      opacity.disabled = false;
      toggle.addEventListener("change", show);
      opacity.addEventListener("input", show);
      show();
      say("Slide and tumour segmentation loaded");
    } else {
      say("Slide loaded (no segmentation yet)");
    }
    state.ready = true;
  }

  start().catch(fail);
})();
