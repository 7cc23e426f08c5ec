mod accounts;
mod catalog;
mod helpers;
mod resilience;
mod sandbox_attacks;
mod submissions;
