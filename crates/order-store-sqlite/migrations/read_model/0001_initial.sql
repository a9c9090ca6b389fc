-- Query-side order documents. `doc` is the whole order as JSON (decimals as
-- strings); the other columns exist to filter and sort.
CREATE TABLE order_views (
    id            TEXT    PRIMARY KEY,
    customer_id   TEXT    NOT NULL,
    restaurant_id TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,  -- RFC 3339, 6 fractional digits, 'Z'
    version       INTEGER NOT NULL,
    doc           TEXT    NOT NULL
) WITHOUT ROWID;

CREATE INDEX idx_order_views_created ON order_views (created_at DESC, id DESC);
CREATE INDEX idx_order_views_customer ON order_views (customer_id, created_at DESC, id DESC);
CREATE INDEX idx_order_views_restaurant ON order_views (restaurant_id, created_at DESC, id DESC);
CREATE INDEX idx_order_views_status ON order_views (status, created_at DESC, id DESC);
