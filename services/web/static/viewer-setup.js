// Runs before the dicom-microscopy-viewer bundle: its decoder worker and codecs are fetched
// from window.PUBLIC_LIB_URL (the package's dist/dynamic-import/ folder); without it, nothing
// decodes.
(function () {
  "use strict";
  var el = document.getElementById("viewport");
  window.PUBLIC_LIB_URL = new URL(el.dataset.lib, window.location.href).href;
})();
