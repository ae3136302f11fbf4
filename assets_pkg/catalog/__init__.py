"""Catalog stage: scan and validate the source folder, quarantine bad files, mirror images into Delta."""
