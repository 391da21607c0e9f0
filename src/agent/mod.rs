//! Agents: the model behind a trait. `api` calls the Anthropic Messages API; `scripted` replays
//! recorded answers for the demo and tests.
