//! Context building: the prompt for one iteration, packed by priority into the model's window.
