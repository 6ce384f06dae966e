//! SIGKILLs at random moments and aimed at the commit.
