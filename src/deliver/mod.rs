//! Outputs: the case directory.
