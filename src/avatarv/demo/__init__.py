"""The local demo web app: upload a reference and speech, watch generation progress, play and download the result."""
