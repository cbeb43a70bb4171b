// The embedded engine: store/store.h on RocksDB.
//
// Everything lives in the default column family, each kind of record under a
// one-byte key prefix. One keyspace keeps one memtable and one write buffer
// budget on a small machine, and a whole kind (or one log) is a key range, so
// replacing the system uids or dropping a channel's log is one DeleteRange in
// the same atomic batch as the rest. Uids, channel ids and log names are
// arbitrary bytes, so wherever one is followed by more key it is length-
// prefixed (varint): a log's prefix is then never a prefix of another log's.
//
//   'm' "format"                                  "1"
//   'm' "max_message_id"                          BE i64
//   't' device_flag uid                           digest[32] device_level
//   'c' type id                                   channel record (below)
//   'u' uid                                       ""  (one key per system uid)
//   'L' varint(len) log BE-u32 seq                message bytes as given
//   'S' log                                       BE u32, last channel seq
//   'Q' varint(len) uid BE-u32 seq                queue message bytes
//   'q' uid                                       BE u32, last queue seq
//   'r' uid                                       BE u32, SyncOnce cursor
//   'd' BE-i64* time_ms varint(len) uid client_msg_no   BE i64 id, BE u32 seq
//   'n' BE-i64* message_id                        message bytes (msg.notify queue)
//   'V' uid                                       conversation list (below)
//   'v' log                                       BE u32, last seq in the conversations
//
// BE integers sort numerically, so one log is ordered by seq and the dedupe
// window by time (*: the sign bit flipped, so negative times sort first too).
// The channel record and the conversation list are in store/record_codec.h.
//
// The directory's format is in the file LIMAOIM_FORMAT ("limaoim-store 1\n"),
// checked before RocksDB touches anything, and in the 'm' "format" key.
#include "limaoim/store/record_codec.h"
#include "limaoim/store/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "limaoim/log/log.h"

namespace limaoim::store {

namespace {

using log::printable;

constexpr int format_version = 1;
constexpr const char* marker_file = "LIMAOIM_FORMAT";

namespace kind {
constexpr char meta = 'm', token = 't', channel = 'c', system_uid = 'u', message = 'L', channel_seq = 'S',
               queue_message = 'Q', queue_seq = 'q', cursor = 'r', dedupe = 'd', notify = 'n',
               conversations = 'V', conversation_seq = 'v';
}

// ---- keys ----

std::string key(char kind, std::string_view rest) {
    std::string k(1, kind);
    k.append(rest);
    return k;
}

// The prefix of every entry of one channel log or user queue.
std::string log_prefix(char kind, std::string_view log) {
    std::string k(1, kind);
    put_bytes(k, log);
    return k;
}

std::string entry_key(std::string prefix, uint32_t seq) {
    put_be(prefix, seq, 4);
    return prefix;
}

// The smallest key after every key starting with `prefix` (which starts with
// a kind byte, never 0xff, so one exists).
std::string prefix_end(std::string prefix) {
    while (uint8_t(prefix.back()) == 0xff) prefix.pop_back();
    prefix.back() = char(uint8_t(prefix.back()) + 1);
    return prefix;
}

std::string dedupe_key_start(int64_t time_ms) {
    std::string k(1, kind::dedupe);
    put_be(k, order_preserving(time_ms), 8);
    return k;
}

std::string notify_key(int64_t id) {
    std::string k(1, kind::notify);
    put_be(k, order_preserving(id), 8);
    return k;
}

const std::string format_key = key(kind::meta, "format");
const std::string max_message_id_key = key(kind::meta, "max_message_id");

Status failed(std::string_view operation, const rocksdb::Status& status) {
    return Status::failure("store " + std::string(operation) + ": " + status.ToString());
}

class RocksdbStore final : public Store {
public:
    RocksdbStore(std::unique_ptr<rocksdb::DB> db, std::string dir) : db_(std::move(db)), dir_(std::move(dir)) {}

    const char* engine() const override { return "rocksdb"; }
    bool shared() const override { return false; }

    Status put_token(const TokenRecord& token) override {
        std::string value(token.digest.begin(), token.digest.end());
        value.push_back(char(token.device_level));
        rocksdb::WriteBatch batch;
        batch.Put(key(kind::token, std::string(1, char(token.device_flag)) + token.uid), value);
        return write(batch, true, "put_token");
    }

    Status load_tokens(const std::function<void(TokenRecord&&)>& each) override {
        return scan(std::string(1, kind::token), "load_tokens", [&](std::string_view rest, std::string_view value) {
            TokenRecord token;
            if (rest.empty() || value.size() != token.digest.size() + 1)
                return Status::failure("store load_tokens: corrupt token record " + printable(rest));
            token.device_flag = uint8_t(rest[0]);
            token.uid = rest.substr(1);
            std::memcpy(token.digest.data(), value.data(), token.digest.size());
            token.device_level = uint8_t(value.back());
            each(std::move(token));
            return Status::success();
        });
    }

    Status put_channel(const ChannelRecord& channel) override {
        rocksdb::WriteBatch batch;
        batch.Put(channel_key(channel.type, channel.id), encode_channel(channel));
        return write(batch, true, "put_channel");
    }

    Status delete_channel(uint8_t type, std::string_view id) override {
        std::string log = log_prefix(kind::message, log_name(type, id));
        rocksdb::WriteBatch batch;
        batch.Delete(channel_key(type, id));
        batch.DeleteRange(log, prefix_end(log));
        return write(batch, true, "delete_channel");
    }

    Status load_channels(const std::function<void(ChannelRecord&&)>& each) override {
        return scan(std::string(1, kind::channel), "load_channels", [&](std::string_view rest, std::string_view value) {
            ChannelRecord channel;
            if (rest.empty() || !decode_channel(value, channel))
                return Status::failure("store load_channels: corrupt channel record " + printable(rest));
            channel.type = uint8_t(rest[0]);
            channel.id = rest.substr(1);
            each(std::move(channel));
            return Status::success();
        });
    }

    Status get_channel(uint8_t type, std::string_view id, ChannelRecord& out, bool& found) override {
        std::string value;
        const rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), channel_key(type, id), &value);
        found = status.ok();
        if (status.IsNotFound()) return Status::success();
        if (!status.ok()) return failed("get_channel", status);
        out = ChannelRecord{};
        if (!decode_channel(value, out))
            return Status::failure("store get_channel: corrupt channel record " + printable(log_name(type, id)));
        out.type = type;
        out.id = id;
        return Status::success();
    }

    Status put_system_uids(const std::vector<std::string>& uids) override {
        // The old set goes in the same batch the new one comes in: readers see one or the other.
        const std::string all(1, kind::system_uid);
        rocksdb::WriteBatch batch;
        batch.DeleteRange(all, prefix_end(all));
        for (const auto& uid : uids) batch.Put(key(kind::system_uid, uid), rocksdb::Slice());
        return write(batch, true, "put_system_uids");
    }

    Status load_system_uids(std::vector<std::string>& uids) override {
        return scan(std::string(1, kind::system_uid), "load_system_uids", [&](std::string_view rest, std::string_view) {
            uids.emplace_back(rest);
            return Status::success();
        });
    }

    Status sync() override {
        const rocksdb::Status status = db_->SyncWAL();
        return status.ok() ? Status::success() : failed("sync", status);
    }

    Status commit(const WriteBatch& batch, bool sync) override {
        // RocksDB counts into a thread-local perf context on every key by
        // default; the committer writes thousands of keys a batch and reads none of it.
        thread_local const bool perf_off = (rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable), true);
        (void)perf_off;
        rocksdb::WriteBatch out;
        for (const auto& m : batch.messages)
            out.Put(entry_key(log_prefix(kind::message, m.log), m.seq), as_slice(m.bytes));
        for (const auto& m : batch.queue_messages)
            out.Put(entry_key(log_prefix(kind::queue_message, m.log), m.seq), as_slice(m.bytes));
        for (const auto& [counters, prefix] : {std::pair{&batch.channel_seqs, kind::channel_seq},
                                              std::pair{&batch.queue_seqs, kind::queue_seq},
                                              std::pair{&batch.cursors, kind::cursor}}) {
            for (const auto& counter : *counters) {
                std::string value;
                put_be(value, counter.value, 4);
                out.Put(key(prefix, counter.log), value);
            }
        }
        for (const auto& d : batch.dedupe) {
            std::string k = dedupe_key_start(d.time_ms);
            put_bytes(k, d.uid);
            k.append(d.client_msg_no);
            std::string value;
            put_be(value, uint64_t(d.message_id), 8);
            put_be(value, d.message_seq, 4);
            out.Put(k, value);
        }
        for (const NotifyEvent& event : batch.notify) out.Put(notify_key(event.id), as_slice(event.bytes));
        for (const UserConversations& user : batch.conversations) {
            if (user.conversations.empty())
                out.Delete(key(kind::conversations, user.uid));
            else
                out.Put(key(kind::conversations, user.uid), encode_conversations(user.conversations));
        }
        for (const auto& counter : batch.conversation_seqs) {
            std::string value;
            put_be(value, counter.value, 4);
            out.Put(key(kind::conversation_seq, counter.log), value);
        }
        if (batch.max_message_id != 0) {
            std::string value;
            put_be(value, uint64_t(batch.max_message_id), 8);
            out.Put(max_message_id_key, value);
        }
        return write(out, sync, "commit");
    }

    Status channel_seq(std::string_view log, uint32_t& seq) override {
        return get_counter(key(kind::channel_seq, log), seq, "channel_seq");
    }
    Status queue_seq(std::string_view uid, uint32_t& seq) override {
        return get_counter(key(kind::queue_seq, uid), seq, "queue_seq");
    }
    Status cursor(std::string_view uid, uint32_t& seq) override {
        return get_counter(key(kind::cursor, uid), seq, "cursor");
    }

    Status max_message_id(int64_t& id) override {
        uint64_t value = 0;
        Status status = get_be(max_message_id_key, 8, value, "max_message_id");
        id = int64_t(value);
        return status;
    }

    Status read_messages(std::string_view log, uint32_t from_seq, uint32_t to_seq, const ReadLimit& limit,
                         std::vector<std::string>& out) override {
        uint64_t end = to_seq == 0 ? uint64_t(1) << 32 : to_seq;
        return read_log(log_prefix(kind::message, log), from_seq, end, limit, out, "read_messages");
    }

    Status read_queue(std::string_view uid, uint32_t after_seq, const ReadLimit& limit,
                      std::vector<std::string>& out) override {
        return read_log(log_prefix(kind::queue_message, uid), uint64_t(after_seq) + 1, uint64_t(1) << 32, limit, out,
                        "read_queue");
    }

    Status load_channel_seqs(const std::function<void(std::string_view, uint32_t)>& each) override {
        return load_counters(kind::channel_seq, "load_channel_seqs", each);
    }

    Status load_conversations(const std::function<void(UserConversations&&)>& each) override {
        return scan(std::string(1, kind::conversations), "load_conversations",
                    [&](std::string_view uid, std::string_view value) {
                        UserConversations user;
                        user.uid = uid;
                        if (!decode_conversations(value, user.conversations))
                            return Status::failure("store load_conversations: corrupt list of " + printable(uid));
                        each(std::move(user));
                        return Status::success();
                    });
    }

    Status get_conversations(std::span<const std::string> uids,
                             std::vector<std::vector<ConversationRecord>>& out) override {
        out.assign(uids.size(), {});
        std::string value;
        for (size_t i = 0; i < uids.size(); ++i) {
            const rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), key(kind::conversations, uids[i]), &value);
            if (status.IsNotFound()) continue;
            if (!status.ok()) return failed("get_conversations", status);
            if (!decode_conversations(value, out[i]))
                return Status::failure("store get_conversations: corrupt list of " + printable(uids[i]));
        }
        return Status::success();
    }

    Status load_conversation_seqs(const std::function<void(std::string_view, uint32_t)>& each) override {
        return load_counters(kind::conversation_seq, "load_conversation_seqs", each);
    }

    Status read_notify(int64_t after_id, uint32_t limit, std::vector<NotifyEvent>& out) override {
        if (limit == 0 || after_id == std::numeric_limits<int64_t>::max()) return Status::success();
        return scan_range(
            notify_key(after_id + 1), prefix_end(std::string(1, kind::notify)), "read_notify",
            [&](std::string_view k, std::string_view value) {
                RecordReader in{k.substr(1)};
                NotifyEvent event;
                event.id = from_order_preserving(in.be(8));
                if (!in.finished()) return Status::failure("store read_notify: corrupt key " + printable(k));
                event.bytes.assign(value.begin(), value.end());
                out.push_back(std::move(event));
                return Status::success();
            },
            limit);
    }

    Status delete_notify(int64_t first_id, int64_t last_id) override {
        if (first_id > last_id) return Status::success();
        rocksdb::WriteBatch batch;
        batch.DeleteRange(notify_key(first_id), last_id == std::numeric_limits<int64_t>::max()
                                                     ? prefix_end(std::string(1, kind::notify))
                                                     : notify_key(last_id + 1));
        return write(batch, true, "delete_notify");
    }

    Status count_notify(uint64_t& count) override {
        count = 0;
        return scan(std::string(1, kind::notify), "count_notify", [&](std::string_view, std::string_view) {
            ++count;
            return Status::success();
        });
    }

    bool writable(std::string& why) override {
        uint64_t background_errors = 0;
        if (db_->GetIntProperty("rocksdb.background-errors", &background_errors) && background_errors > 0) {
            why = "store: RocksDB reported " + std::to_string(background_errors) + " background errors";
            return false;
        }
        // What a new WAL or table file needs: create, write and sync a file in the directory.
        const std::string probe = dir_ + "/.health-probe";
        // O_NOFOLLOW: a symlink planted under this name (by whoever could write
        // in the directory) fails the probe instead of being written through.
        int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        bool ok = fd >= 0 && ::write(fd, "ok\n", 3) == 3 && ::fdatasync(fd) == 0;
        const int saved = errno;
        if (fd >= 0) ::close(fd);
        ::unlink(probe.c_str());
        if (!ok) why = "store: cannot write in " + dir_ + ": " + std::strerror(saved);
        return ok;
    }

    Status load_dedupe(int64_t since_ms, const std::function<void(DedupeRecord&&)>& each) override {
        const std::string start = dedupe_key_start(since_ms);
        return scan_range(start, prefix_end(std::string(1, kind::dedupe)), "load_dedupe",
                          [&](std::string_view k, std::string_view value) {
                              RecordReader in{k.substr(1)}, out{value};
                              DedupeRecord record;
                              record.time_ms = from_order_preserving(in.be(8));
                              record.uid = in.bytes();
                              record.client_msg_no = in.rest;
                              record.message_id = int64_t(out.be(8));
                              record.message_seq = uint32_t(out.be(4));
                              if (!in.ok || !out.finished())
                                  return Status::failure("store load_dedupe: corrupt dedupe record " + printable(k));
                              each(std::move(record));
                              return Status::success();
                          });
    }

    Status expire_dedupe(int64_t before_ms) override {
        rocksdb::WriteBatch batch;
        batch.DeleteRange(std::string(1, kind::dedupe), dedupe_key_start(before_ms));
        return write(batch, false, "expire_dedupe");
    }

    // O(window): its committer, the only writer, never needs to ask (store.h).
    Status find_dedupe(std::string_view uid, std::string_view client_msg_no, int64_t since_ms, DedupeRecord& out,
                       bool& found) override {
        found = false;
        return load_dedupe(since_ms, [&](DedupeRecord&& record) {
            if (!found && record.uid == uid && record.client_msg_no == client_msg_no) {
                out = std::move(record);
                found = true;
            }
        });
    }

    // Its committer is the only writer: what it finds stays.
    Status confirm_dedupe(const std::vector<DedupeRecord>&) override { return Status::success(); }

private:
    using Visit = std::function<Status(std::string_view key, std::string_view value)>;

    static rocksdb::Slice as_slice(const std::vector<uint8_t>& bytes) {
        return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
    }

    static std::string channel_key(uint8_t type, std::string_view id) {
        return key(kind::channel, log_name(type, id));
    }

    Status write(rocksdb::WriteBatch& batch, bool sync, std::string_view operation) {
        rocksdb::WriteOptions options;
        options.sync = sync;
        rocksdb::Status status = db_->Write(options, &batch);
        return status.ok() ? Status::success() : failed(operation, status);
    }

    Status load_counters(char prefix, std::string_view operation,
                         const std::function<void(std::string_view, uint32_t)>& each) {
        return scan(std::string(1, prefix), operation, [&](std::string_view log, std::string_view value) {
            RecordReader in{value};
            const uint32_t seq = uint32_t(in.be(4));
            if (!in.finished())
                return Status::failure("store " + std::string(operation) + ": corrupt counter of " + printable(log));
            each(log, seq);
            return Status::success();
        });
    }

    Status get_be(const std::string& k, int width, uint64_t& value, std::string_view operation) {
        value = 0;
        std::string stored;
        rocksdb::Status status = db_->Get(rocksdb::ReadOptions(), k, &stored);
        if (status.IsNotFound()) return Status::success();
        if (!status.ok()) return failed(operation, status);
        RecordReader in{stored};
        value = in.be(width);
        if (!in.finished()) {
            value = 0;
            return Status::failure("store " + std::string(operation) + ": corrupt value under " + printable(k));
        }
        return Status::success();
    }

    Status get_counter(const std::string& k, uint32_t& seq, std::string_view operation) {
        uint64_t value = 0;
        Status status = get_be(k, 4, value, operation);
        seq = uint32_t(value);
        return status;
    }

    // An iterator that sees only [lower, upper); both must outlive it.
    std::unique_ptr<rocksdb::Iterator> bounded(const rocksdb::Slice& lower, const rocksdb::Slice& upper) {
        rocksdb::ReadOptions options;
        options.iterate_lower_bound = &lower;
        options.iterate_upper_bound = &upper;
        return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(options));
    }

    // Visits every key in [begin, end) in order; `visit` sees the whole key.
    Status scan_range(const std::string& begin, const std::string& end, std::string_view operation,
                      const Visit& visit, uint64_t limit = std::numeric_limits<uint64_t>::max()) {
        const rocksdb::Slice lower(begin), upper(end);
        std::unique_ptr<rocksdb::Iterator> it = bounded(lower, upper);
        uint64_t visited = 0;
        for (it->Seek(begin); it->Valid() && visited < limit; it->Next(), ++visited) {
            Status status = visit(it->key().ToStringView(), it->value().ToStringView());
            if (!status) return status;
        }
        return it->status().ok() ? Status::success() : failed(operation, it->status());
    }

    // Visits every key starting with `prefix`; `visit` sees the key without it.
    Status scan(const std::string& prefix, std::string_view operation, const Visit& visit) {
        return scan_range(prefix, prefix_end(prefix), operation, [&](std::string_view k, std::string_view value) {
            return visit(k.substr(prefix.size()), value);
        });
    }

    // Entries of one log with first <= seq < end (end up to 2^32), within
    // `limit` (ReadLimit): the iterator goes no further than what it returns.
    Status read_log(const std::string& prefix, uint64_t first, uint64_t end, const ReadLimit& limit,
                    std::vector<std::string>& out, std::string_view operation) {
        if (first >= end || limit.count == 0) return Status::success();
        const std::string begin = entry_key(prefix, uint32_t(first));
        const std::string stop =
            end > std::numeric_limits<uint32_t>::max() ? prefix_end(prefix) : entry_key(prefix, uint32_t(end));
        const rocksdb::Slice lower(begin), upper(stop);
        std::unique_ptr<rocksdb::Iterator> it = bounded(lower, upper);
        const size_t first_out = out.size();
        size_t bytes = 0;
        for (limit.newest ? it->SeekToLast() : it->Seek(lower);
             it->Valid() && out.size() - first_out < limit.count && !limit.spent(bytes);
             limit.newest ? it->Prev() : it->Next()) {
            out.emplace_back(it->value().ToStringView());
            bytes += out.back().size();
        }
        if (!it->status().ok()) return failed(operation, it->status());
        if (limit.newest) std::reverse(out.begin() + ptrdiff_t(first_out), out.end());
        return Status::success();
    }

    std::unique_ptr<rocksdb::DB> db_;
    const std::string dir_;
};

// ---- the directory and its format marker ----

std::string marker_text(int version) { return "limaoim-store " + std::to_string(version) + "\n"; }

// Writes the marker whole or not at all: a crash leaves no half-written marker.
bool write_marker(const std::filesystem::path& dir, std::string& error) {
    const std::filesystem::path final_path = dir / marker_file, temp_path = dir / (std::string(marker_file) + ".tmp");
    const std::string text = marker_text(format_version);
    int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    ok = ok && ::rename(temp_path.c_str(), final_path.c_str()) == 0;
    if (ok) {
        int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ok = dir_fd >= 0 && ::fsync(dir_fd) == 0;
        if (dir_fd >= 0) ::close(dir_fd);
    }
    if (!ok) error = "cannot write " + final_path.string() + ": " + std::strerror(errno);
    return ok;
}

// Checks the directory before RocksDB sees it: made and marked when new or
// empty, refused when it holds another format or something unmarked.
bool prepare_dir(const std::filesystem::path& dir, std::string& error) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::file_status status = fs::status(dir, ec);
    if (fs::exists(status) && !fs::is_directory(status)) {
        error = "data dir " + dir.string() + " exists and is not a directory";
        return false;
    }
    if (!fs::exists(status) && !fs::create_directories(dir, ec) && ec) {
        error = "cannot create data dir " + dir.string() + ": " + ec.message();
        return false;
    }
    // Messages and token digests are for the server's user alone: a new
    // directory is made 0700 (main sets the umask to 077), an existing one
    // open to the group or others is closed (its files, made under another
    // umask, are unreachable once the directory is).
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
        error = "cannot read data dir " + dir.string() + ": " + std::strerror(errno);
        return false;
    }
    if ((st.st_mode & 077) != 0) {
        if (::chmod(dir.c_str(), st.st_mode & 0700) != 0) {
            error = "cannot make data dir " + dir.string() + " private (chmod 0700): " + std::strerror(errno);
            return false;
        }
        log::write(log::Level::Warn, "store", "data dir %s was mode %04o (readable by other users): changed to %04o",
                   dir.c_str(), unsigned(st.st_mode & 07777), unsigned(st.st_mode & 0700));
    }
    const fs::path marker = dir / marker_file;
    if (!fs::exists(marker, ec)) {
        bool empty = fs::is_empty(dir, ec);
        if (ec) {
            error = "cannot read data dir " + dir.string() + ": " + ec.message();
            return false;
        }
        if (!empty) {
            error = "data dir " + dir.string() + " is not empty but has no " + marker_file +
                    " marker: refusing to open it (not a limaoim store, or not one this limaoim wrote)";
            return false;
        }
        return write_marker(dir, error);
    }
    std::ifstream in(marker);
    std::stringstream text;
    text << in.rdbuf();
    int version = 0;
    char newline = 0;
    if (!in || std::sscanf(text.str().c_str(), "limaoim-store %d%c", &version, &newline) != 2 || newline != '\n') {
        error = "data dir " + dir.string() + " has an unreadable " + marker_file + " marker: refusing to open it";
        return false;
    }
    if (version != format_version) {
        error = "data dir " + dir.string() + " has store format " + std::to_string(version) + ", this limaoim reads format " +
                std::to_string(format_version) + ": refusing to open it (no silent rewrite)";
        return false;
    }
    return true;
}

rocksdb::Options tuned_options() {
    rocksdb::Options options;
    options.create_if_missing = true;
    // An IM server on a small machine: one modest memtable, two background
    // threads for flushes and compactions, and RocksDB's own LOG kept small.
    options.write_buffer_size = 64 << 20;
    options.max_write_buffer_number = 2;
    options.max_background_jobs = 2;
    options.level_compaction_dynamic_level_bytes = true;
    options.keep_log_file_num = 4;
    options.max_log_file_size = 8 << 20;
    // The gateway's sockets need the file descriptors more than the table cache does.
    options.max_open_files = 512;
    // Every write reaches the kernel before Write() returns: a process crash loses nothing.
    options.manual_wal_flush = false;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = rocksdb::NewLRUCache(32 << 20);
    options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    return options;
}

}  // namespace

std::unique_ptr<Store> open_embedded(const std::string& dir, std::string& error) {
    if (!prepare_dir(dir, error)) return nullptr;
    rocksdb::DB* raw = nullptr;
    rocksdb::Status status = rocksdb::DB::Open(tuned_options(), dir, &raw);
    if (!status.ok()) {
        error = "cannot open store in " + dir + ": " + status.ToString();
        return nullptr;
    }
    std::unique_ptr<rocksdb::DB> db(raw);

    // The key repeats the marker inside the data, where a copied-over marker cannot change it.
    std::string stored;
    status = db->Get(rocksdb::ReadOptions(), format_key, &stored);
    if (status.IsNotFound()) {
        rocksdb::WriteOptions sync;
        sync.sync = true;
        status = db->Put(sync, format_key, std::to_string(format_version));
    } else if (status.ok() && stored != std::to_string(format_version)) {
        error = "data dir " + dir + " holds store format " + printable(stored) + " but is marked format " +
                std::to_string(format_version) + ": refusing to open it (no silent rewrite)";
        return nullptr;
    }
    if (!status.ok()) {
        error = "cannot read the format of the store in " + dir + ": " + status.ToString();
        return nullptr;
    }
    return std::make_unique<RocksdbStore>(std::move(db), dir);
}

}  // namespace limaoim::store
