//! instavm.yaml v1/v2 model, validation, deploy plan and zero-config detection
