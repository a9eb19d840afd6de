-- The eBPF sensor's profile and the hook each kind got, as the agent's last check-in reports
-- them (`sensor_hooks`), as JSON; NULL from older agents and in driverless mode. The wire type
-- bounds it (at most 32 kinds, labels of at most 64 bytes).
ALTER TABLE agent_state ADD COLUMN sensor_hooks TEXT;
