//! The embedded demo model: Z-Image architecture with tiny dims, deterministic random weights
//! built in memory, and a tokenizer it builds itself. Owner: loader helper C.
