//! Weight sources: memory-mapped safetensors with dtype cast at load, and a deterministic
//! random backend (demo model, `--random-weights`). Owner: loader helper C.
