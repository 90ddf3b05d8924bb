"""Head types: the registry record, the torch head modules and the postprocessing of outputs."""
