//! Issue 9: the safe API keeps its promise. One file per item of the issue; each test did
//! not pass on the code before the fix (a crash, a privilege gained, a committed ERROR, a
//! wrong answer). Every test ends by asserting that no server process crashed.

mod alps_privileges;
mod backend_load;
mod caught_errors;
mod commit_errors;
mod handles;
mod lwlocks;
mod own_writes;
mod params;
mod privileges;
mod queues;
mod restart;
mod return_type;
mod threads;
mod unconnected;
