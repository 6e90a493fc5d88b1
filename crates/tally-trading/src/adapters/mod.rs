pub mod consumers;
pub mod replies;
pub mod routes;
pub mod store;
pub mod ws;
