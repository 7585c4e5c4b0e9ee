{{- define "migwatch.labels" -}}
app.kubernetes.io/name: migwatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "migwatch.minInsync" -}}
{{- $factor := int .Values.kafka.replicationFactor -}}
{{- if .Values.kafka.minInsyncReplicas }}{{ .Values.kafka.minInsyncReplicas }}{{ else if ge $factor 3 }}{{ sub $factor 1 }}{{ else }}1{{ end -}}
{{- end }}

{{- define "migwatch.kafkaEnv" -}}
- name: MIGWATCH_KAFKA_BOOTSTRAP
  value: {{ .Values.kafka.bootstrap | quote }}
- name: MIGWATCH_KAFKA_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: MIGWATCH_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: MIGWATCH_KAFKA_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: MIGWATCH_KAFKA_MIN_INSYNC_REPLICAS
  value: {{ include "migwatch.minInsync" . | quote }}
- name: MIGWATCH_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}
- name: MIGWATCH_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.sasl.mechanism | quote }}
- name: MIGWATCH_KAFKA_SASL_USERNAME
  value: {{ required "kafka.sasl.username is required with a SASL securityProtocol" .Values.kafka.sasl.username | quote }}
- name: MIGWATCH_KAFKA_SASL_PASSWORD_FILE
  value: /etc/migwatch/kafka-sasl/password
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .secret }}
- name: MIGWATCH_KAFKA_SSL_CAFILE
  value: /etc/migwatch/kafka-tls/ca.crt
{{- if .certKey }}
- name: MIGWATCH_KAFKA_SSL_CERTFILE
  value: /etc/migwatch/kafka-tls/tls.crt
- name: MIGWATCH_KAFKA_SSL_KEYFILE
  value: /etc/migwatch/kafka-tls/tls.key
{{- end }}
{{- end }}
- name: MIGWATCH_KAFKA_SSL_CHECK_HOSTNAME
  value: {{ .checkHostname | quote }}
{{- end }}
{{- end }}

{{- /* The Kafka Secrets as read-only files (the SASL password, the TLS CA and client key pair). */}}
{{- define "migwatch.kafkaVolumeMounts" -}}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}
- name: kafka-sasl
  mountPath: /etc/migwatch/kafka-sasl
  readOnly: true
{{- end }}
{{- if .Values.kafka.tls.secret }}
- name: kafka-tls
  mountPath: /etc/migwatch/kafka-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "migwatch.kafkaVolumes" -}}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}
- name: kafka-sasl
  secret:
    secretName: {{ required "kafka.sasl.passwordSecret is required with a SASL securityProtocol" .Values.kafka.sasl.passwordSecret }}
    defaultMode: 0440
    items:
      - key: {{ .Values.kafka.sasl.passwordKey }}
        path: password
{{- end }}
{{- with .Values.kafka.tls }}
{{- if .secret }}
- name: kafka-tls
  secret:
    secretName: {{ .secret }}
    defaultMode: 0440
    items:
      - key: {{ .caKey }}
        path: ca.crt
      {{- if .certKey }}
      - key: {{ .certKey }}
        path: tls.crt
      - key: {{ required "kafka.tls.keyKey is required with kafka.tls.certKey" .keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "migwatch.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{- define "migwatch.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "migwatch.serviceAccountName" -}}
{{ .Values.serviceAccount.name | default .Release.Name }}
{{- end }}

{{- /* Pod-level: the ServiceAccount without a token, the runtime's default seccomp profile, the group that
may read the mounted Secrets. */}}
{{- define "migwatch.podSpec" -}}
serviceAccountName: {{ include "migwatch.serviceAccountName" . }}
automountServiceAccountToken: false
{{- end }}

{{- define "migwatch.podSecurityContext" -}}
fsGroup: 10001  # the Kafka Secrets' files are readable by the group
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- /* nodeSelector, tolerations and affinity of one component's values. */}}
{{- define "migwatch.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- /* A pod restarts when the config it reads changes. */}}
{{- define "migwatch.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}
