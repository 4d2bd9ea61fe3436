//! Tollgate's only door to GitHub: App authentication, the review callback,
//! checks, run state, pacing, and the webhook receiver.
