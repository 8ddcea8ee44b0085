"""Writing the converted model out (SavedModel, tfjs) and checking it in its own runtime."""
