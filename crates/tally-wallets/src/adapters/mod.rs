pub mod consumers;
pub mod routes;
pub mod store;
