//! The engine: the only place that knows the order of the loop's stages.
