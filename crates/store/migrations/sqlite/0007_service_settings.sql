-- Settings of the service that every node and the command line read from the database, such as
-- the public URL `rollcall serve` was last started with (the one identity providers use).
CREATE TABLE service_settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_us INTEGER NOT NULL
);
