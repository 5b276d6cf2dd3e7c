//! Wire formats: peer frames, message codec, handshake, RESP2, transport (work in progress).
