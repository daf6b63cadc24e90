"""Video in and out: sources and sinks named by URI, and drawing of detections."""
