mod http;
mod workers;
