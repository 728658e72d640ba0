"""Bytes -> canonical 64x64 uint8 scans: image arrays, files (PNG, JPEG, NPY, NPZ) and DICOM."""
