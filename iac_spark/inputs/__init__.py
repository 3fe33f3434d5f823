"""Pure-Python input layer: discover files, open zip members, parse DICOM headers. No pyspark."""
