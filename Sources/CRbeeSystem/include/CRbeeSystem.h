#pragma once

/// Asks the kernel to send `signal` to this process when its parent dies (Linux; no-op
/// elsewhere). prctl is variadic, so Swift cannot call it directly. Returns 0 on success.
int rbee_set_parent_death_signal(int signal);
