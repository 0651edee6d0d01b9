#!/usr/bin/env bash
# Installs the Debian packages the service and its tests use, when they are missing:
# DCMTK (storescu/storescp as real DICOM peers), dicom3tools (dciodvfy, the validator),
# Chromium (browser tests), npm (fetches the viewer bundle), Orthanc (the PACS routing example)
# with its DICOMweb plugin (the PACS the pull tests query and retrieve from), openssl (the TLS
# recipe in the operator guide) and libturbojpeg0 (the vendor-file converter). Needs root or sudo.
set -euo pipefail

need=()
command -v storescu >/dev/null || need+=(dcmtk)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
command -v chromium >/dev/null || need+=(chromium)
command -v npm >/dev/null || need+=(npm)
command -v Orthanc >/dev/null || need+=(orthanc)  # a real PACS for the routing example's test
# QIDO-RS/WADO-RS for the pull tests (Debian installs the plugin here)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v openssl >/dev/null || need+=(openssl)
# opentile (the vendor-file converter, .venv-convert) reads JPEG tiles with libjpeg-turbo's API
ldconfig -p 2>/dev/null | grep -q 'libturbojpeg\.so' || need+=(libturbojpeg0)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${need[@]}"
