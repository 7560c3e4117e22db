// An agency system's round trip with liaison in Java 17, with the JDK alone: java.net.http
// with the agency's PKCS#12 key store; the registry, a route preview, posting a CloudEvent,
// its inclusion proof against a checkpoint whose Ed25519 signature is verified, pulling the
// inbox and acknowledging.
//
// Run it as a single source file: java Agency.java
//
// Environment:
//   LIAISON_URL           the gateway, e.g. https://localhost:8443
//   LIAISON_CA            the county CA certificate (PEM)
//   LIAISON_P12           this agency's key and certificate (PKCS#12)
//   LIAISON_P12_PASSWORD  its password
//   LIAISON_LEDGER_KEY    the ledger's Ed25519 public key, hex (ledger-signing.pub, from the operator)
//   LIAISON_EVENT         a CloudEvent file to post (structured JSON mode, a fresh `id`)
//
// Prints one line per step; exits non-zero at the first step that fails.

import java.io.FileInputStream;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.Signature;
import java.security.cert.CertificateFactory;
import java.security.spec.X509EncodedKeySpec;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public class Agency {
    static String base;
    static HttpClient http;

    public static void main(String[] args) throws Exception {
        base = env("LIAISON_URL").replaceAll("/+$", "");
        http = HttpClient.newBuilder()
                .sslContext(sslContext())
                .connectTimeout(Duration.ofSeconds(10))
                .build();
        byte[] event = Files.readAllBytes(Path.of(env("LIAISON_EVENT")));

        List<?> agencies = (List<?>) obj(call("GET", "/v1/agencies", null, 200)).get("agencies");
        System.out.println("agencies: " + agencies.size());

        // Who would receive it; nothing is recorded.
        Map<String, Object> preview = obj(call("POST", "/v1/routes/preview", event, 200));
        List<String> names = new ArrayList<>();
        for (Object r : (List<?>) preview.get("recipients")) {
            names.add((String) ((Map<?, ?>) r).get("agency"));
        }
        System.out.println("preview: " + String.join(",", names));

        // 202: recorded in the ledger and going to be delivered.
        Map<String, Object> accepted = obj(call("POST", "/v1/messages", event, 202));
        String id = (String) accepted.get("id");
        System.out.println("accepted: " + id + " seq " + accepted.get("seq"));

        verifyProof(id);

        // Pull (long poll up to 10 s) and acknowledge each delivery once it is stored.
        Map<String, Object> pulled = obj(call("GET", "/v1/inbox?wait=10&max=10", null, 200));
        List<?> deliveries = (List<?>) pulled.get("deliveries");
        if (deliveries.isEmpty()) fail("the inbox is empty");
        long first = -1;
        for (Object d : deliveries) {
            Map<?, ?> delivery = (Map<?, ?>) d;
            long number = ((Number) delivery.get("delivery")).longValue();
            if (first < 0) first = number;
            System.out.println("pulled: " + number + " " + delivery.get("type") + " " + delivery.get("message_id"));
            call("POST", "/v1/inbox/" + number + "/ack", null, 204);
            System.out.println("acknowledged: " + number);
        }
        // An ack repeated (its first answer lost) is told that the first one stands.
        Map<String, Object> again = obj(call("POST", "/v1/inbox/" + first + "/ack", null, 200));
        if (!Boolean.TRUE.equals(again.get("already_acknowledged"))) fail("repeated ack: " + again);
        System.out.println("acknowledged again: " + first + " already_acknowledged");
    }

    /** The message's inclusion proof against a checkpoint whose signature is checked first. */
    static void verifyProof(String id) throws Exception {
        Map<String, Object> proof = null;
        for (int i = 0; i < 60; i++) {
            HttpResponse<String> answer = send("GET", "/v1/messages/" + id + "/proof", null);
            if (answer.statusCode() == 200) {
                proof = obj(answer.body());
                if (!((List<?>) proof.get("entries")).isEmpty() && ((List<?>) proof.get("pending")).isEmpty()) break;
            }
            proof = null;
            Thread.sleep(500);
        }
        if (proof == null) fail("no checkpoint covers " + id);
        Map<?, ?> checkpoint = (Map<?, ?>) proof.get("checkpoint");
        String note = (String) checkpoint.get("note");
        byte[] root = verifyNote(note);
        if (!Arrays.equals(root, HexFormat.of().parseHex((String) checkpoint.get("root_hash")))) {
            fail("the checkpoint's root is not the one its note signs");
        }
        Map<?, ?> entry = (Map<?, ?>) ((List<?>) proof.get("entries")).get(0);
        List<byte[]> path = new ArrayList<>();
        for (Object h : (List<?>) entry.get("audit_path")) path.add(HexFormat.of().parseHex((String) h));
        long index = ((Number) entry.get("leaf_index")).longValue();
        long size = ((Number) entry.get("tree_size")).longValue();
        if (!verifyInclusion(index, size, HexFormat.of().parseHex((String) entry.get("leaf_hash")), path, root)) {
            fail("the inclusion proof does not lead to the signed root");
        }
        System.out.println("proof: leaf " + index + " verified in the signed checkpoint of size " + size);
    }

    /**
     * Checks a C2SP signed note's Ed25519 signature by the ledger key and returns the root it
     * signs. The signed text is everything before the blank line, its last newline included;
     * a signature line is "— NAME base64(key id ‖ signature)", the key id being the first 4
     * bytes of SHA-256(NAME ‖ "\n" ‖ 0x01 ‖ public key). Lines of other keys are ignored.
     */
    static byte[] verifyNote(String note) throws Exception {
        int blank = note.indexOf("\n\n");
        if (blank < 0) fail("a note without a signature");
        byte[] text = note.substring(0, blank + 1).getBytes(StandardCharsets.UTF_8);
        String[] lines = note.substring(0, blank).split("\n");
        String name = lines[0];
        byte[] raw = HexFormat.of().parseHex(Files.readString(Path.of(env("LIAISON_LEDGER_KEY"))).trim());
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        sha.update((name + "\n").getBytes(StandardCharsets.UTF_8));
        sha.update((byte) 0x01);
        byte[] keyId = Arrays.copyOf(sha.digest(raw), 4);
        // X.509 SubjectPublicKeyInfo of a raw Ed25519 key: a fixed 12-byte prefix.
        byte[] spki = new byte[44];
        System.arraycopy(HexFormat.of().parseHex("302a300506032b6570032100"), 0, spki, 0, 12);
        System.arraycopy(raw, 0, spki, 12, 32);
        PublicKey key = KeyFactory.getInstance("Ed25519").generatePublic(new X509EncodedKeySpec(spki));
        for (String line : note.substring(blank + 2).split("\n")) {
            if (!line.startsWith("\u2014 " + name + " ")) continue;
            byte[] signed = Base64.getDecoder().decode(line.substring(name.length() + 3));
            if (signed.length != 68 || !Arrays.equals(Arrays.copyOf(signed, 4), keyId)) continue;
            Signature verifier = Signature.getInstance("Ed25519");
            verifier.initVerify(key);
            verifier.update(text);
            if (verifier.verify(Arrays.copyOfRange(signed, 4, 68))) {
                System.out.println("checkpoint: signature by " + name + " verified, size " + lines[1]);
                return Base64.getDecoder().decode(lines[2]);
            }
        }
        fail("no signature by the ledger key verifies");
        return null;
    }

    /** RFC 9162 section 2.1.3.2. */
    static boolean verifyInclusion(long index, long size, byte[] leaf, List<byte[]> path, byte[] root) throws Exception {
        if (index >= size) return false;
        long fn = index, sn = size - 1;
        byte[] r = leaf;
        for (byte[] p : path) {
            if (sn == 0) return false;
            if ((fn & 1) == 1 || fn == sn) {
                r = node(p, r);
                if ((fn & 1) == 0) {
                    while ((fn & 1) == 0 && fn != 0) {
                        fn >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = node(r, p);
            }
            fn >>= 1;
            sn >>= 1;
        }
        return sn == 0 && Arrays.equals(r, root);
    }

    static byte[] node(byte[] left, byte[] right) throws Exception {
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        sha.update((byte) 0x01);
        sha.update(left);
        return sha.digest(right);
    }

    static SSLContext sslContext() throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream ca = new FileInputStream(env("LIAISON_CA"))) {
            trust.setCertificateEntry("county-ca", CertificateFactory.getInstance("X.509").generateCertificate(ca));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        char[] password = env("LIAISON_P12_PASSWORD").toCharArray();
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (InputStream p12 = new FileInputStream(env("LIAISON_P12"))) {
            keys.load(p12, password);
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, password);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        return context;
    }

    static HttpResponse<String> send(String method, String path, byte[] body) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(30));
        if (body != null) {
            request.header("content-type", "application/cloudevents+json")
                    .method(method, HttpRequest.BodyPublishers.ofByteArray(body));
        } else {
            request.method(method, HttpRequest.BodyPublishers.noBody());
        }
        return http.send(request.build(), HttpResponse.BodyHandlers.ofString());
    }

    /** One request; any other status than `expected` ends the program with the problem document. */
    static String call(String method, String path, byte[] body, int expected) throws Exception {
        HttpResponse<String> answer = send(method, path, body);
        if (answer.statusCode() != expected) {
            fail(method + " " + path + " answered " + answer.statusCode() + ": " + answer.body());
        }
        return answer.body();
    }

    static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) fail("set " + name);
        return value;
    }

    static void fail(String why) {
        System.err.println("FAILED: " + why);
        System.exit(1);
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> obj(String json) {
        return (Map<String, Object>) new Json(json).value();
    }

    /** Just enough JSON for these answers: objects, arrays, strings, numbers, literals. */
    static final class Json {
        private final String s;
        private int i;

        Json(String s) {
            this.s = s;
        }

        Object value() {
            skip();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> map = new LinkedHashMap<>();
                i++;
                skip();
                if (s.charAt(i) == '}') { i++; return map; }
                while (true) {
                    skip();
                    String key = string();
                    skip();
                    i++; // ':'
                    map.put(key, value());
                    skip();
                    if (s.charAt(i++) == '}') return map;
                }
            }
            if (c == '[') {
                List<Object> list = new ArrayList<>();
                i++;
                skip();
                if (s.charAt(i) == ']') { i++; return list; }
                while (true) {
                    list.add(value());
                    skip();
                    if (s.charAt(i++) == ']') return list;
                }
            }
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String number = s.substring(start, i);
            return number.matches("-?\\d+") ? (Object) Long.parseLong(number) : (Object) Double.parseDouble(number);
        }

        private String string() {
            StringBuilder out = new StringBuilder();
            i++; // opening quote
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return out.toString();
                if (c != '\\') { out.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> out.append('\n');
                    case 't' -> out.append('\t');
                    case 'r' -> out.append('\r');
                    case 'b' -> out.append('\b');
                    case 'f' -> out.append('\f');
                    case 'u' -> { out.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> out.append(e);
                }
            }
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }
    }
}
