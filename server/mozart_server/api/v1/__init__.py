"""mozart.v1.AudioClassifier, the native API."""
