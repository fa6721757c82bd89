pub mod https;
