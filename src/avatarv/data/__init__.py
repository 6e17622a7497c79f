"""Data: the embedded synthetic talking-head corpus (`avatarv synth`), real-footage ingest (`avatarv ingest`)
and the datasets that feed training. Submodules are imported on demand (rendering pulls OpenCV and dlib)."""
