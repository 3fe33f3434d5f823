"""The DICOM codec: header parse (stops before pixels), DICOM JSON, pydicom compatibility. No pyspark."""
